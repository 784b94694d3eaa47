"""Built-in bitagent plugins, each registered through the `bitagent` entry-point group."""
