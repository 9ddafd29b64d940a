"""The web dashboard of `conveyor server`: server-rendered pages over the API's data."""
