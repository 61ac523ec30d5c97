"""nbgrader's configuration for this repository.

JupyterLab loads nbgrader's server extensions (the Nbgrader menu), and nbgrader looks for
this file in the folder JupyterLab serves, the repository root: without it every start of
`workbook lab` warns "No nbgrader_config.py file found". The defaults are enough for that.
The instructor's course (`workbook nbgrader build`) is a separate folder with its own config.
"""

c = get_config()  # noqa: F821 -- nbgrader defines get_config() when it loads this file
