"""The lecture's experiments, run through ferroptim's public API.

``python -m ferroptim <subcommand>`` (or the ``ferroptim`` console script):

* ``rates``: GD, Polyak's heavy ball and Nesterov on an ill-conditioned quadratic,
  measured linear rates beside the lecture's ``(κ−1)/(κ+1)``, ``(√κ−1)/(√κ+1)`` and
  ``sqrt((√κ−1)/√κ)``;
* ``compare``: every optimizer on logistic regression and a two-layer network
  (Kingma & Ba 2015, Fig. 2);
* ``b0-sweep``: scalar AdaGrad against SGD with step ``1/b0`` over a grid of ``b0``
  (Ward, Wu & Bottou 2018, Figs. 1–2).
* ``agn-theory``: the lecture's AdaGrad-Norm theorems (Ward, Wu & Bottou 2018), the
  iteration bound, fixed steps, the proof's ingredients and ``b_k ≈ c_g √k``, checked
  run by run on problems with exact ``L`` and ``F*``.

These modules need the ``experiments`` extra (matplotlib, tqdm, scikit-learn); the
optimizers themselves need only NumPy.
"""
