"""The district's model and language: what every service agrees on. Pure: the clock, the
event contracts, the administrative tree, the routing policy, and what free text may hold."""
