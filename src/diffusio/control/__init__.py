"""The planning and control domain: environments, scripted controllers and offline datasets
(D4RL-style, generated locally) for Diffuser, Decision Diffuser, loss guidance, Diffusion Policy
and DPPO.

* :mod:`~diffusio.control.envs` -- :func:`~diffusio.control.envs.make_env` by name
  (``pointmaze-umaze|medium|large``, ``lunarlander``, ``point2d``), PointMaze's observation
  flattening and :func:`~diffusio.control.envs.check_observation`;
* :mod:`~diffusio.control.pointmaze` -- PointMaze's flat-observation wrapper, D4RL's goal
  cells and the maze grid in cell coordinates;
* :mod:`~diffusio.control.point2d` -- our 2-D point mass with circular obstacles, goals and
  skills;
* :mod:`~diffusio.control.controllers` -- D4RL's maze2d waypoint controller, the LunarLander
  heuristic with action noise, a random policy and the point2d script;
* :mod:`~diffusio.control.scores` -- episode rollouts, the reference scores and D4RL's
  normalised score;
* :mod:`~diffusio.control.generate` -- the data recipes (D4RL's maze2d stream, mixed-quality
  LunarLander, point2d skills);
* :mod:`~diffusio.control.datasets` -- ``make_dataset`` / ``load_dataset`` (``.npz`` + JSON
  manifest, cached) and ``diffusio make-dataset``.

The simulators need the ``control`` extra (``pip install 'diffusio[control]'``: gymnasium,
gymnasium-robotics, mujoco, box2d, pygame); they are imported inside functions, so importing
this package needs none of them. ``docs/control.md`` describes the environments, the data recipe
and the normalised score. Nothing is imported here: import the modules directly.
"""
