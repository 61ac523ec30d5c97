"""Real services for graders (issue: service layer). Each yields one connection object."""
