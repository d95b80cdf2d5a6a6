# nbgrader settings of the course (nbgrader 0.9). Run nbgrader, or
# `python -m course_tools.grading`, from this folder. See book/instructor_guide.md.
c = get_config()  # noqa: F821  (nbgrader provides get_config)

c.CourseDirectory.course_id = "llm-from-scratch"
# One assignment per chapter: solutions/chNN/chNN_exercises.ipynb -> exercises/chNN/...
c.CourseDirectory.source_directory = "solutions"
c.CourseDirectory.release_directory = "exercises"
# Students' work goes in submitted/<student>/chNN/; grading writes autograded/ and feedback/.
c.CourseDirectory.submitted_directory = "submitted"
c.CourseDirectory.autograded_directory = "autograded"
c.CourseDirectory.feedback_directory = "feedback"
# The gradebook is nbgrader's default, gradebook.db in this folder (ignored by git: it holds
# students' grades).

# What students see in place of each solution.
c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}

# Grading a student's notebook: a cell that runs longer than this is interrupted (the
# batch command sets it per run with --timeout).
c.Execute.timeout = 60
# Keep a flood of printed output out of the graded notebook and the feedback.
c.LimitOutput.max_lines = 1000
c.LimitOutput.max_traceback = 100
# A test cell that a student deleted is put back from the gradebook and run.
c.OverwriteCells.add_missing_cells = True
# Each assignment's text source (solutions/chNN/_src/, see solutions/jupytext.toml) is for
# authors only: it holds the solutions and the hidden checks, so it never reaches students.
c.CourseDirectory.ignore = [".ipynb_checkpoints", "*.pyc", "__pycache__", "feedback", "_src"]

# Grading runs the notebook in a sandbox (course_tools/grading/sandbox.py, bubblewrap): the
# kernel sees no course folder, no gradebook, no network and none of the grader's
# environment, and has these limits (per process; disk: its working folder and /tmp each).
# c.SandboxedKernelManager.memory_mb = 4096
# c.SandboxedKernelManager.cpu_seconds = 1800   # the batch sets it to --student-timeout
# c.SandboxedKernelManager.file_mb = 256
# c.SandboxedKernelManager.disk_mb = 512
# c.SandboxedKernelManager.open_files = 512
# c.SandboxedKernelManager.processes = 256
# And with the course's guard around each checks cell
# (course_tools/nbgrader_plugins.py): a notebook that rebinds or patches what the checks use
# gets 0 for those exercises, with an error that says what it changed; and stderr output of
# a checks cell (a progress bar or a log line of the learner's code) does not cost points.
c.Autograde.autograde_preprocessors = [
    "course_tools.nbgrader_plugins.GuardedExecute",
    "nbgrader.preprocessors.IgnorePattern",
    "nbconvert.preprocessors.ClearMetadataPreprocessor",
    "nbgrader.preprocessors.LimitOutput",
    "nbgrader.preprocessors.SaveAutoGrades",
    "nbgrader.preprocessors.AssignLatePenalties",
    "nbgrader.preprocessors.CheckCellMetadata",
]
# The feedback pages: the scores and the one-line message of each failed check, the
# grader's outcome on top, and never the source of the hidden checks. The student wrote the
# notebook: SafeFeedback, last before the exporter, leaves nothing on a page that can run or load
# anything (only text and real PNG/JPEG images; markdown through an allow-list of HTML).
c.GenerateFeedback.preprocessors = [
    "nbgrader.preprocessors.GetGrades",
    "course_tools.nbgrader_plugins.HideHiddenChecks",
    "course_tools.nbgrader_plugins.OneLineErrors",
    "course_tools.nbgrader_plugins.OutcomeNote",
    "course_tools.nbgrader_plugins.SafeFeedback",
    "nbconvert.preprocessors.CSSHTMLHeaderPreprocessor",
]
# nbconvert's own sanitizer as well (it cleans outputs; nbgrader's feedback template renders
# markdown cells without it, hence SafeFeedback), and no file of the grader's machine that a
# markdown image names is read into a page.
c.HTMLExporter.sanitize_html = True
c.HTMLExporter.embed_images = False
# Late submissions: nbgrader's default is no penalty. To give 0 to a notebook handed in
# after the due date (nbgrader db assignment add chNN --duedate=...), uncomment:
# c.LateSubmissionPlugin.penalty_method = "zero"
