"""course_tools: the course's own tooling, beside the model code of ``reference_impl``.

* ``checks``    -- the feedback of the exercise notebooks: checks that say what to fix, and
  the guard that notices a solution calling ``reference_impl`` instead of implementing it
* ``grading``   -- the instructor's commands: make the student notebooks, grade a class
  robustly with nbgrader (``python -m course_tools.grading``)
* ``notebooks`` -- the authors' commands: keep notebooks and their jupytext text sources
  together, execute notebooks and store their outputs (``python -m course_tools.notebooks``)

Learners read ``reference_impl``; nothing here is part of what the chapters build.
"""
