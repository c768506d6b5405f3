//! The bank account: a persistent actor with typed errors. Its state is
//! saved to the host's durable store after every successful call, so a
//! re-created account under the same name continues where the killed one
//! stopped. It counts refused withdrawals and exposes its balance as
//! metrics (`prism::metrics`), served on the node's `/metrics` as
//! `prism_guest_failed_withdrawals_total` and `prism_guest_account_balance`.

use serde::{Deserialize, Serialize};
use std::fmt;

/// Why an operation was refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountError {
    /// Amounts must be positive.
    NegativeAmount(i64),
    /// The balance may not drop below the minimum.
    Overdraft {
        balance: i64,
        requested: i64,
        minimum: i64,
    },
}

impl fmt::Display for AccountError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AccountError::NegativeAmount(a) => write!(f, "amount must be positive, got {a}"),
            AccountError::Overdraft {
                balance,
                requested,
                minimum,
            } => write!(
                f,
                "withdrawing {requested} from {balance} would go below the minimum of {minimum}"
            ),
        }
    }
}

/// A bank account that keeps a minimum balance.
#[prism::actor(persistent)]
#[derive(Serialize, Deserialize)]
pub struct Account {
    balance: i64,
    minimum: i64,
    operations: u64,
}

#[prism::actor]
impl Account {
    fn new(initial: i64, minimum: i64) -> Result<Self, AccountError> {
        if initial < minimum {
            return Err(AccountError::Overdraft {
                balance: 0,
                requested: -initial,
                minimum,
            });
        }
        Ok(Account {
            balance: initial,
            minimum,
            operations: 0,
        })
    }

    fn deposit(&mut self, amount: i64) -> Result<i64, AccountError> {
        if amount <= 0 {
            return Err(AccountError::NegativeAmount(amount));
        }
        self.balance += amount;
        self.operations += 1;
        self.report_balance();
        Ok(self.balance)
    }

    fn withdraw(&mut self, amount: i64) -> Result<i64, AccountError> {
        if amount <= 0 {
            refused("negative_amount");
            return Err(AccountError::NegativeAmount(amount));
        }
        if self.balance - amount < self.minimum {
            refused("overdraft");
            return Err(AccountError::Overdraft {
                balance: self.balance,
                requested: amount,
                minimum: self.minimum,
            });
        }
        self.balance -= amount;
        self.operations += 1;
        self.report_balance();
        Ok(self.balance)
    }

    fn balance(&self) -> (i64, u64) {
        (self.balance, self.operations)
    }
}

impl Account {
    /// The balance as a gauge. A metric that cannot be recorded (the
    /// tenant holds its most series) does not fail the operation.
    fn report_balance(&self) {
        let _ = prism::metrics::gauge("account_balance").set(self.balance as f64);
    }
}

/// Counts a refused withdrawal by reason.
fn refused(reason: &str) {
    let _ = prism::metrics::counter("failed_withdrawals")
        .label("reason", reason)
        .inc();
}

/// What [`metric_flood`] saw.
#[derive(Serialize)]
struct Flood {
    /// Series recorded.
    recorded: u32,
    /// The first refusal, if any.
    refused: Option<String>,
}

/// Records `n` counters with distinct labels: past the tenant's series
/// cap the host refuses them with a typed error.
#[prism::main]
fn metric_flood(n: u32) -> prism::Result<Flood> {
    let mut recorded = 0;
    for i in 0..n {
        match prism::metrics::counter("flood")
            .label("i", &i.to_string())
            .inc()
        {
            Ok(()) => recorded += 1,
            Err(e) => {
                return Ok(Flood {
                    recorded,
                    refused: Some(format!("{e:?}")),
                });
            }
        }
    }
    Ok(Flood {
        recorded,
        refused: None,
    })
}

/// What the driver returns.
#[derive(Serialize)]
struct Report {
    balance_before_kill: (i64, u64),
    negative_error: Option<AccountError>,
    overdraft_error: Option<AccountError>,
    /// The call the overdraft's error names as its origin.
    overdraft_origin: Option<String>,
    call_after_kill: String,
    balance_after_recreate: (i64, u64),
    restored: bool,
}

/// Opens account `name` with 1000 (minimum 100), deposits 500, withdraws
/// 200, tries a negative amount and an overdraft, kills the actor, and
/// re-creates it under the same name.
#[prism::main]
fn main(name: Option<String>) -> prism::Result<Report> {
    let name = name.unwrap_or_else(|| "alice".to_string());
    let account = Account::options().name(&name).remote(1000, 100)?;
    prism::get(&account.deposit(500).remote())?;
    prism::get(&account.withdraw(200).remote())?;
    let negative_error = prism::get(&account.withdraw(-5).remote())
        .err()
        .and_then(|e| e.payload());
    let overdraft = prism::get(&account.withdraw(5000).remote()).err();
    let overdraft_origin = match &overdraft {
        Some(prism::Error::Task {
            origin: Some(o), ..
        }) => Some(o.function.clone()),
        _ => None,
    };
    let overdraft_error = overdraft.and_then(|e| e.payload());
    let balance_before_kill = prism::get(&account.balance().remote())?;

    prism::kill(&account)?;
    let call_after_kill = match prism::get(&account.balance().remote()) {
        Ok(b) => format!("unexpected balance {b:?}"),
        Err(e) => e
            .kind()
            .map(|k| k.to_string())
            .unwrap_or_else(|| e.to_string()),
    };

    // Same name: the saved state wins over the constructor arguments.
    let again = Account::options().name(&name).remote(0, 0)?;
    let balance_after_recreate = prism::get(&again.balance().remote())?;
    Ok(Report {
        balance_before_kill,
        negative_error,
        overdraft_error,
        overdraft_origin,
        call_after_kill,
        restored: balance_after_recreate == balance_before_kill,
        balance_after_recreate,
    })
}
