"""Open311 GeoReport v2 under /open311/v2/, so that existing Open311 clients and apps work
unchanged. The published specification is the contract: https://wiki.open311.org/GeoReport_v2

How gridcall maps onto it:
- a service is a category of the routing policy; its attributes are the category's questions;
- a service request is a case (`service_request_id` is the case id). A report of a problem
  already reported close by joins the open case, and the answer carries that case's id;
- `status` is `open` until the handling unit resolves the case, then `closed` (the spec's
  "it has been resolved"); a reopened case is `open` again. `status_notes` tells the last
  public step; `agency_responsible` is the unit that leads the case at its current tier;
  `expected_datetime` is the resolution time limit of that tier;
- requests are `realtime`: POST answers with the id, never with a token. `tokens/{token}`
  resolves a gridcall tracking token (from the v1 API) to its case id;
- this endpoint serves one jurisdiction, so `jurisdiction_id` is ignored, as the spec allows.

What is public: GET requests needs no key, so the listing shows only cases of categories the
policy marks `public` that no flagged household or one-key call raised. The resident's own
words (description, typed address, exact point, media) are shown only for reports filed
through Open311, whose apps tell their users that reports are public; other cases show the
grid's address and centre. Contact details and staff notes are never shown. A case that is
not listed can still be looked up by its (unguessable) id, without those details.

The rooms: `routes.py` (the routes), `mapping.py` (form fields to reports, cases to service
requests), `queries.py` (the listings' SQL), `formats.py` (JSON and XML, the spec's errors and
date-times) and `schema.py` (what the API description says of all this).
"""
