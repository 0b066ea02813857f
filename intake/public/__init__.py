"""The public results feed (公示): resolved and closed cases of the policy's public categories,
newest resolution first, as JSON at /v1/public/results and as a page at /public.

What is public: the category, the community and grid (never the resident's point, address or
words), the dates, the unit that resolved it, its result note and the satisfaction outcome.
A case raised by a one-key call or by a flagged household is never listed (as in Open311's
listing); contact details, household flags and internal notes are not in the case view at all."""
