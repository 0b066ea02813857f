-- A database per service (GRIDCALL_<SERVICE>_DATABASE_URL in docker-compose.yml): no service
-- can read another's tables. Run once, by the postgres image, when its volume is new.
CREATE DATABASE gridcall_intake;
CREATE DATABASE gridcall_dispatcher;
CREATE DATABASE gridcall_departments;
CREATE DATABASE gridcall_notifier;
