-- The burst check counts a referrer's recent leads in one program. With only
-- (participant_id, created_at) Postgres was seen combining it with the
-- program-wide index, reading every referral of the program on each lead
-- (docs/benchmarks.md, event ingestion): one index answers it alone.
DROP INDEX referrals_participant;
CREATE INDEX referrals_recent ON referrals (participant_id, program_id, created_at);
