"""Files dd-hub writes and reads: atomic writes and strict JSON, weights (safetensors only), the output folder of a
run as a unit (lock, staged commit, hashes)."""
