import sys

from course_tools.grading.cli import main

sys.exit(main())
