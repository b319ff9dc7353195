"""Learning rules.  Each rule implements ``step(encoder, batch) -> metrics`` (see ``base.Rule``).

* ``backprop.Supervised`` -- cross-entropy, gradients through every block (the reference);
* ``ssl.EndToEnd`` -- InfoNCE (SimCLR), end-to-end hinge CPC, SimSiam, BYOL by backprop;
* ``ssl.LayerWise`` -- Greedy InfoMax: layer-wise InfoNCE, gradients stopped at block boundaries;
* ``clapp.CLAPP`` -- CLAPP and CLAPP-s: explicit local three-factor updates, no backprop;
* ``hebbian`` -- two-factor rules returning Δw (Hebb, Oja, Sanger, BCM, competitive, SoftHebb,
  Krotov-Hopfield, nonlinear Hebbian ICA, anti-Hebbian inhibition) and ``HebbianBlockwise``;
* ``three_factor`` -- eligibility traces × a broadcast modulator (reward, TD error, novelty, surprise);
* ``phinet.PhiNet`` -- the CA3-CA1 delay model on an encoder, local and backprop modes.

Submodules are imported on use, so ``import bioplausible.rules`` compiles nothing.
"""
