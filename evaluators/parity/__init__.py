"""Parity with the official scorers' own code: ``record.py`` runs each official package in its environment
(``envs.py``) on seeded tiny weights and a fixed image set (``seeded.py``) and commits the scores under
``references/``; tests/evaluators/parity compares LeapBench's evaluation scores with them. GenEval's detector the
same way: mmdet's own Mask2Former at GenEval's size on seeded weights, its detections under ``references/``."""
