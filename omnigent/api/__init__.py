"""The FastAPI app: routes parse a request, make one actor call, return the result."""
