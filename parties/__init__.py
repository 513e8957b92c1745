"""The processes of a session: a party (runs the user's script) and the dealer."""
