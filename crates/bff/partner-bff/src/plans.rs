//! What each plan allows a key: the numbers partners sign up for.

use std::collections::HashMap;

use tailor_interceptors::limits::Plan;

/// For trying the API out.
pub const TRIAL: &str = "trial";
/// For production integrations.
pub const STANDARD: &str = "standard";
/// For large partners syncing often.
pub const PREMIUM: &str = "premium";
/// Every plan.
pub const ALL: [&str; 3] = [TRIAL, STANDARD, PREMIUM];

/// The limits of every plan.
pub fn limits() -> HashMap<String, Plan> {
    HashMap::from([
        (
            TRIAL.to_owned(),
            Plan {
                per_second: 5.0,
                burst: 10,
                daily_quota: 1_000,
            },
        ),
        (
            STANDARD.to_owned(),
            Plan {
                per_second: 50.0,
                burst: 100,
                daily_quota: 100_000,
            },
        ),
        (
            PREMIUM.to_owned(),
            Plan {
                per_second: 500.0,
                burst: 1_000,
                daily_quota: 5_000_000,
            },
        ),
    ])
}

/// Parses an override such as `trial=5:10:1000` (calls per second, burst,
/// calls per day) of one plan's limits.
pub fn parse_override(text: &str) -> Result<(String, Plan), String> {
    let bad = || format!("{text:?}: expected <plan>=<per second>:<burst>:<per day>");
    let (name, numbers) = text.split_once('=').ok_or_else(bad)?;
    if !ALL.contains(&name) {
        return Err(format!("unknown plan {name:?} (known: {})", ALL.join(", ")));
    }
    let plan: Plan = numbers.parse().map_err(|_| bad())?;
    Ok((name.to_owned(), plan))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_name_a_known_plan_and_three_numbers() {
        let (name, plan) = parse_override("trial=2.5:4:100").unwrap();
        assert_eq!(name, "trial");
        assert_eq!(
            plan,
            Plan {
                per_second: 2.5,
                burst: 4,
                daily_quota: 100
            }
        );
        for bad in [
            "gold=1:1:1",
            "trial=1:1",
            "trial=0:1:1",
            "trial",
            "trial=a:b:c",
        ] {
            assert!(parse_override(bad).is_err(), "{bad}");
        }
    }
}
