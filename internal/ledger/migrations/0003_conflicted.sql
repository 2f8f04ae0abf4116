-- A deposit whose transaction was double-spent on the best chain is 'conflicted': taken back if it
-- was credited, and never credited again, whatever a wallet later says of it. An outgoing send
-- whose broadcast was conflicted or vanished goes to 'needs_review' rather than being paid again.
ALTER TABLE transactions DROP CONSTRAINT transactions_state_check;
ALTER TABLE transactions ADD CONSTRAINT transactions_state_check CHECK (state IN (
    'pending', 'broadcasting', 'broadcasted', 'confirmed', 'failed', 'needs_review',  -- outgoing
    'incoming', 'credited', 'reverted', 'conflicted',                                -- deposit
    'done'));                                                                        -- internal, network_fee
