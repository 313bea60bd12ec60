"""What an echo clip is, independent of any model: the paired ECG–echo phantom (training and scoring data
with exact labels) and measurements on any clip."""
