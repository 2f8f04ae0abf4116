-- The sends of a broadcast are read by broadcast only while they are broadcasting: to settle a
-- paid broadcast, to fail, shrink or recover an open one, to find the paid ones not yet settled.
-- Indexed by broadcast whatever their state, every send ever broadcast stayed in the index, and
-- settling a send, then confirming it, each wrote it a new entry there that nothing would read
-- (an update that changes state is never a heap-only one, so each writes an entry in every index
-- whose predicate the new row meets). Kept to the sends on their way, the index holds at most
-- the open and the unsettled broadcasts' sends, and a send is written into it once. On a ledger
-- with 100,000 past sends (EXPLAIN (ANALYZE, WAL) of each statement, 15 times, rolled back;
-- medians of three to five runs): settling a broadcast of 1,000 sends wrote 6,058 WAL records
-- instead of 7,122 and took 20.1-21.6 ms instead of 22.2-24.1; confirming them, 6,076 records
-- instead of 7,147, 8.7-9.7 ms instead of 11.4-11.8. The index is 16 kB instead of 864 kB.
DROP INDEX transactions_broadcast;
CREATE INDEX transactions_broadcast ON transactions (broadcast_id) WHERE state = 'broadcasting';
