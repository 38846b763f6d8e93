"""The LitServe translation service (`nmt serve`)."""
