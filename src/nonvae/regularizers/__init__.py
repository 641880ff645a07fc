"""Regularizers: terms added to the reconstruction loss (see :mod:`nonvae.regularizers.base`).

Each module registers its regularizer and config section with ``@register_regularizer``; the
registry finds a new file in this folder without further edits. The built-in ones are imported
here first so that their order, which fixes the order of the loss terms, never changes.
"""
# isort: skip_file

from nonvae.regularizers import acai, domain, augment, ltae  # noqa: F401
