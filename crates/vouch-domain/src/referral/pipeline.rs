//! The moves staff may make in the sales pipeline. Facts from the company's
//! backend are not bound by this table (see `facts`): they report what happened.

use super::Stage::{self, *};

/// Every move staff may make, in one place. Forward along
/// `new → contacted → qualified → won` (skipping ahead is allowed: a deal can close
/// before anyone logged a call); any open stage to `lost`; `won → churned`; and
/// `lost → new` to reopen. Nothing leaves `churned`, and nothing goes backwards but
/// the reopen.
pub const STAFF_MOVES: &[(Stage, Stage)] = &[
    (New, Contacted),
    (New, Qualified),
    (New, Won),
    (New, Lost),
    (Contacted, Qualified),
    (Contacted, Won),
    (Contacted, Lost),
    (Qualified, Won),
    (Qualified, Lost),
    (Won, Churned),
    (Lost, New),
];

/// A staff move the pipeline forbids. A value with a stable code, so the API can
/// answer with a problem document and the pages with a friendly sentence.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Moving to the stage the referral is already at: nothing would change, and
    /// saying so beats recording an event that changed nothing.
    #[error("{}", unchanged_sentence(*stage))]
    StageUnchanged { stage: Stage },
    #[error("{}", not_allowed_sentence(*from, *to))]
    StageNotAllowed { from: Stage, to: Stage },
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::StageUnchanged { .. } => "stage_unchanged",
            Refusal::StageNotAllowed { .. } => "stage_not_allowed",
        }
    }
}

fn unchanged_sentence(stage: Stage) -> String {
    format!("The referral is already at `{stage}`.")
}

fn not_allowed_sentence(from: Stage, to: Stage) -> String {
    let allowed = from.staff_moves_from();
    let allowed = match allowed.as_slice() {
        [] => format!("no move is allowed from `{from}`"),
        [one] => format!("from `{from}` it can only move to `{one}`"),
        [init @ .., last] => {
            let init: Vec<String> = init.iter().map(|s| format!("`{s}`")).collect();
            format!("from `{from}` it can move to {} or `{last}`", init.join(", "))
        }
    };
    format!("A referral at `{from}` cannot be moved to `{to}`; {allowed}.")
}

impl Stage {
    /// A staff member moving the referral to `to`.
    pub fn staff_move(self, to: Stage) -> Result<Stage, Refusal> {
        if self == to {
            Err(Refusal::StageUnchanged { stage: self })
        } else if STAFF_MOVES.contains(&(self, to)) {
            Ok(to)
        } else {
            Err(Refusal::StageNotAllowed { from: self, to })
        }
    }

    /// The stages staff may move a referral to from this one, in pipeline order:
    /// what a page offers, and what a refusal lists.
    pub fn staff_moves_from(self) -> Vec<Stage> {
        STAFF_MOVES.iter().filter(|(from, _)| *from == self).map(|&(_, to)| to).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every pair of stages, with whether staff may make that move. The whole
    /// 6 × 6 grid, so that a change to `STAFF_MOVES` shows up here as a diff.
    #[test]
    fn staff_moves_follow_the_published_pipeline() {
        #[rustfmt::skip]
        let grid: [(Stage, [bool; 6]); 6] = [
            //             new    contacted qualified won    lost   churned
            (New,       [false, true,     true,     true,  true,  false]),
            (Contacted, [false, false,    true,     true,  true,  false]),
            (Qualified, [false, false,    false,    true,  true,  false]),
            (Won,       [false, false,    false,    false, false, true ]),
            (Lost,      [true,  false,    false,    false, false, false]),
            (Churned,   [false, false,    false,    false, false, false]),
        ];
        for (from, row) in grid {
            for (to, allowed) in Stage::ALL.iter().copied().zip(row) {
                let got = from.staff_move(to);
                assert_eq!(got.is_ok(), allowed, "{from} → {to}: {got:?}");
                if allowed {
                    assert_eq!(got, Ok(to));
                }
            }
        }
    }

    #[test]
    fn moving_backwards_is_refused_naming_both_stages_and_what_is_allowed() {
        let refusal = Qualified.staff_move(Contacted).unwrap_err();
        assert_eq!(refusal.code(), "stage_not_allowed");
        assert_eq!(
            refusal.to_string(),
            "A referral at `qualified` cannot be moved to `contacted`; from `qualified` it can move to `won` or `lost`."
        );
    }

    #[test]
    fn nothing_moves_out_of_churned() {
        let refusal = Churned.staff_move(New).unwrap_err();
        assert_eq!(refusal.code(), "stage_not_allowed");
        assert_eq!(
            refusal.to_string(),
            "A referral at `churned` cannot be moved to `new`; no move is allowed from `churned`."
        );
    }

    #[test]
    fn a_won_referral_can_only_churn() {
        assert_eq!(
            Won.staff_move(Lost).unwrap_err().to_string(),
            "A referral at `won` cannot be moved to `lost`; from `won` it can only move to `churned`."
        );
    }

    #[test]
    fn moving_to_the_current_stage_is_refused_as_unchanged() {
        let refusal = Won.staff_move(Won).unwrap_err();
        assert_eq!(refusal.code(), "stage_unchanged");
        assert_eq!(refusal.to_string(), "The referral is already at `won`.");
    }

    #[test]
    fn a_lost_referral_is_reopened_at_new() {
        assert_eq!(Lost.staff_move(New), Ok(New));
        assert_eq!(Lost.staff_moves_from(), vec![New]);
    }
}
