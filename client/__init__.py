"""The one client of the renewals: what the ingress, starter.py and the worker call to start,
update and pay renewals."""
