-- The burst check counts a referrer's recent leads and invites in a program,
-- and the invite limit their recent invites. With (participant_id, program_id,
-- created_at) both read every recent referral of the referrer, signups
-- included, to keep the few leads: a referrer whose link brings hundreds of
-- signups a day paid for each of them on every lead (docs/benchmarks.md, event
-- ingestion). With the source in the key, each source is one range.
DROP INDEX referrals_recent;
CREATE INDEX referrals_recent ON referrals (participant_id, program_id, source, created_at);
