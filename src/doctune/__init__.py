"""doctune: fine-tune vision-language models to answer questions about documents."""

__version__ = "0.1.0"
