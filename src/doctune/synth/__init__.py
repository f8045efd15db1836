"""Synthetic business documents with question/answer pairs read from the page.

Example:
    >>> from doctune.synth import generate_document
    >>> doc = generate_document("invoice", seed=0)
    >>> question, answer = doc.qa[0]
"""

from doctune.synth.document import KINDS, Document, generate_document
from doctune.synth.writer import write_dataset

__all__ = ["KINDS", "Document", "generate_document", "write_dataset"]
