"""One module per model family; each registers its encoders with ``@register_encoder``.

The registry imports every module here (those not starting with ``_``) on its first lookup, so
adding a model is adding a file. Builders import timm or transformers inside the function:
listing the encoders loads neither.
"""
