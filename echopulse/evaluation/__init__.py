"""`echopulse eval`: does a generator's clip follow its ECG? Held-out phantom beats, measured, against labels.

- `heldout`: the held-out phantom set (ECG window + true clip + labels per seed);
- `tokenizer_eval`: the video tokenizer's reconstruction error on phantom and real echo clips;
- `generation_eval`: one generated clip per held-out ECG, measured, against the labels, with controls;
- `plots`, `report`: the pictures, `eval.json` and `per_sample.csv`.
"""
