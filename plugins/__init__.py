"""visum's built-in plugins (import name ``visum_plugins``).

Each module is written exactly as a third-party plugin would be: a module of
``@visum.hookimpl`` functions returning component classes. They are registered from
``registry.toml`` instead of an entry point; that is the only difference.
"""
