"""matchers"""
