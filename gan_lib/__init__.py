"""gan_lib: a runnable reproduction of "The New Involution Operator and Its Application on GANs" (iGAN)."""
# Threads: gan_lib leaves OpenMP's wait policy to the environment. libgomp's default (spin briefly, then sleep)
# is the fastest on an idle machine (involution fwd+bwd 28 ms vs 84 ms with OMP_WAIT_POLICY=PASSIVE at the
# paper's shape on 2 cores), but pathological when more busy threads than cores share the machine (up to 50x
# slower): there, give each process fewer threads (OMP_NUM_THREADS; the study runner does) or export
# OMP_WAIT_POLICY=PASSIVE.

__version__ = "0.1.0"
