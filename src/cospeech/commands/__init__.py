"""Command-line front ends, one module per command or group; each defines ``register(tree)``.

Modules import their packages inside the command functions, so ``cospeech --help`` stays fast.
"""
