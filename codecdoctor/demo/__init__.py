"""The demo: the negative-SNR saga end to end (run.py), on a generated corpus (corpus.py)."""

# The demo's training budget, in optimizer steps of batch 8: what it shows depends on the steps, not
# on the machine's speed. 360 steps train the default codec far enough for every saga round to name
# its check (about a minute of training on two idle CPU cores; a busy machine takes longer).
DEMO_STEPS = 360
