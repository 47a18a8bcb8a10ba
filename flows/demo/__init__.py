"""The embedded default: a loopback "web" of real text and a Pushshift-style dump pointing at it."""
