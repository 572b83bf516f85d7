"""Joint jobs: signed specs, job kinds, the runner every party goes through, open and initiate."""
