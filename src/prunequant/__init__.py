"""prunequant: prune and quantize BERT-family text classifiers into a measured menu of variants."""

__version__ = "0.1.0"
