"""One worker per interview: the front claims a worker, routes the candidate's signaling to
it, and reaps what is left behind; the backends (``local``) run the workers."""
