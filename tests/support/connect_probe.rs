//! The probe of `tests/libpq_parity.rs`: `planrun-connect-probe QUERY [CONNINFO]`
//! resolves the target exactly as every planrun command does (`CONNINFO` as
//! `--database-url`, else `DATABASE_URL`, `./.env`, the `PG*` variables), connects
//! through the engine, runs `QUERY` (the one the test gives psql) and prints its rows
//! as `psql -At` does, fields joined by `|`. A refusal exits 16 with the message on
//! stderr.

use planrun_engine::{exit_codes, Target};

fn main() {
    let query = std::env::args().nth(1).expect("usage: QUERY [CONNINFO]");
    let explicit = std::env::args().nth(2);
    let cwd = std::env::current_dir().expect("a working directory");
    let landed = Target::resolve(explicit.as_deref(), &cwd)
        .and_then(|target| target.connect("planrun-probe"))
        .map_err(|error| error.to_string())
        .and_then(|mut client| {
            client
                .simple_query(&query)
                .map_err(|error| error.to_string())
        });
    match landed {
        Ok(messages) => {
            for message in messages {
                if let postgres::SimpleQueryMessage::Row(row) = message {
                    let fields: Vec<&str> = (0..row.len())
                        .map(|index| row.get(index).unwrap_or(""))
                        .collect();
                    println!("{}", fields.join("|"));
                }
            }
        }
        Err(error) => {
            eprintln!("{error}");
            std::process::exit(exit_codes::CANNOT_CONNECT);
        }
    }
}
