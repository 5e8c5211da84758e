-- shop upgrade script 0.1 -> 0.2.
--
-- Every schema change of 0.2 is made here AND in the install parts in
-- src/sql/; test/t/004_upgrade.pl proves that an upgraded 0.1 database and a
-- fresh 0.2 install have the same catalog contents.

\echo Use "ALTER EXTENSION shop UPDATE TO '0.2'" to load this file. \quit
