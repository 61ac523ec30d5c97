"""nbgrader's configuration for this repository.

JupyterLab loads nbgrader's server extensions (the Nbgrader menu), and nbgrader looks for
this file in the folder JupyterLab serves, the repository root: without it every start of
`workbook lab` warns "No nbgrader_config.py file found". The defaults are enough for that;
the instructor's course export (`workbook nbgrader build`) adds its settings here.
"""

c = get_config()  # noqa: F821 -- nbgrader defines get_config() when it loads this file
