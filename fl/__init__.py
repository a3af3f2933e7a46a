"""Federated learning on top of secure aggregation (needs the ``fl`` extra).

- :mod:`fl.datasets`: Fed-Heart-Disease (4 real hospitals, FLamby's split) and
  simulated splits (breast cancer), partitioners;
- :mod:`fl.models`: logistic regression and a small MLP, flat-vector view;
- :mod:`fl.algorithms`: FedAvg, FedProx, FedSGD, FedAdam/FedYogi/FedAdagrad;
- :mod:`fl.aggregation` / :mod:`fl.privacy`: the door to ``protocols.sim``
  (SecAgg, SecAgg+, HE, plaintext; distributed DP per hospital);
- :mod:`fl.record_dp`: record-level DP (distributed DP-SGD, Opacus per-sample gradients);
- :mod:`fl.trainer`: the round loop with checkpoints; :mod:`fl.experiment`,
  :mod:`fl.report`, :mod:`fl.cli` (the ``secagg`` command), :mod:`fl.demo`.

Submodules are imported on demand so that ``import fl`` stays light.
"""
