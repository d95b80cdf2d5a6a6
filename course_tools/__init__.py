"""course_tools: the course's own tooling, beside the model code of ``reference_impl``.

* ``checks``    -- the feedback of the exercise notebooks: checks that say what to fix, and
  the guard that notices a solution calling ``reference_impl`` instead of implementing it
* ``grading``   -- the instructor's commands: make the student notebooks, grade a class
  with nbgrader, each kernel in a sandbox, in parallel (``python -m course_tools.grading``)
* ``nbgrader_plugins``, ``grading_guard`` -- the preprocessors ``nbgrader_config.py`` names
  (sandboxed, guarded execution; inert feedback pages) and the guard that runs in the kernel
* ``notebooks`` -- the authors' commands: keep notebooks and their jupytext text sources
  together, execute notebooks and store their outputs (``python -m course_tools.notebooks``)

Learners read ``reference_impl``; nothing here is part of what the chapters build.
"""
