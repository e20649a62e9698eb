"""Synthetic speaker corpus: speech with exact phoneme timings (espeak), speaker voices
(``voices``), the built-in text bank (``text_bank``), and the skeleton, motion rules,
renderer and corpus writer built on them."""
