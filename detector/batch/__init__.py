"""``main.py batch``: the app's ``--report`` over many videos, resumable, on a local process
pool or a Ray cluster.

``inputs`` finds the videos, ``job`` analyses one (a plain function, no engine in it),
``store`` owns the output folder (staging, completion markers, resume), ``combine`` builds
summary.csv and failures.csv, ``local``/``ray_engine`` run jobs, ``cli`` ties them together,
``bench`` measures throughput. Ray is imported only by ``ray_engine``.
"""
