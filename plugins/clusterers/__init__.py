"""clusterers"""
