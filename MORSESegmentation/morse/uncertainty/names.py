"""Names of the uncertainty options (:mod:`morse.uncertainty.maps`), importable without torch."""

FREE = ("margin", "refined-margin", "refined-entropy", "disagreement", "entropy+disagreement")
MONTE_CARLO = ("mc-entropy", "mc-mutual")
FLIP = ("flip-entropy", "flip-disagreement")
OPTIONS = FREE + MONTE_CARLO + FLIP
