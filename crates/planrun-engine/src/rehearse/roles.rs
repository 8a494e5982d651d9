//! The rehearsal copy's roles: the target's, so the plan runs in the copy with the
//! privileges it will have in production, and no more.
//!
//! A copy restored without owners into a cluster whose only role is a superuser,
//! with the plan applied as that role, is weaker than production: a trigger an
//! unprivileged production role wrote ran `COPY ... TO PROGRAM` on the rehearsing
//! machine, where production refused it. So (steps 2 and 3 run in `copy.rs`, the
//! rest here):
//!
//! 1. The copy's bootstrap superuser is planrun's own, [`COPY_SUPERUSER`], so every
//!    role of the target, `postgres` included, can be created with the target's
//!    attributes. A target with a role of that name is refused.
//! 2. `pg_dumpall --roles-only --no-role-passwords` reads the target's roles, their
//!    memberships and per-role settings, with the connection settings pg_dump gets.
//!    Without passwords it reads `pg_roles`, so a non-superuser applying role can run
//!    it, and no password hash leaves the target.
//! 3. The roles go into the copy before `pg_restore`, which then restores owners,
//!    ACLs and default privileges. The database's own owner and ACL, which a dump
//!    without `--create` lacks, are set from the target's `pg_database`, and its
//!    settings (`ALTER DATABASE ... SET`, `ALTER ROLE ... IN DATABASE ... SET`) from
//!    `pg_db_role_setting` (not with `--create`: that would also demand the target's
//!    locale on this machine).
//! 4. Then the copy is confined ([`confine`]): every role but the applying one loses
//!    LOGIN and SUPERUSER, and membership in the roles that reach the server's files
//!    and programs (`pg_execute_server_program`, `pg_read_server_files`,
//!    `pg_write_server_files`) is kept for the applying role alone, and only if it
//!    had it on the target. A function of a superuser owner that reaches files thus
//!    fails in the rehearsal where production would run it: stricter, never weaker,
//!    and the report lists the roles so demoted.
//! 5. The plan runs as the applying role (the target's `current_user`). A superuser,
//!    or a member of those roles, cannot be confined inside PostgreSQL: the report's
//!    `warnings` say so, naming the OS account at risk. It is not refused: such a
//!    rehearsal does exactly what the apply will do, on a machine the operator chose;
//!    refusing would only push teams to apply unrehearsed.

use planrun_sql::quote_identifier;
use postgres::Client;

use crate::db::connect::Target;
use crate::error::EngineError;
use crate::rehearse::error::RehearseError;
use crate::rehearse::report::CopyRoles;

/// The copy's bootstrap superuser: planrun's, so it collides with no target role.
pub(super) const COPY_SUPERUSER: &str = "planrun_rehearsal_superuser";

/// The predefined roles whose members reach the server machine's files or programs.
const SERVER_ACCESS_ROLES: [&str; 3] = [
    "pg_execute_server_program",
    "pg_read_server_files",
    "pg_write_server_files",
];

/// What the copy needs to know of the target: who applies, and its database's owner
/// and privileges.
#[derive(Debug, Clone)]
pub(crate) struct TargetAccess {
    applying_role: String,
    superuser: bool,
    database_owner: String,
    /// `None` while the database has the default privileges.
    database_grants: Option<Vec<DatabaseGrant>>,
    /// `ALTER DATABASE ... SET` (role `None`) and `ALTER ROLE ... IN DATABASE ... SET`
    /// of the target's database, as `pg_db_role_setting` holds them.
    database_settings: Vec<(Option<String>, Vec<String>)>,
}

#[derive(Debug, Clone)]
struct DatabaseGrant {
    privilege: String,
    /// `None` for PUBLIC.
    grantee: Option<String>,
    grantable: bool,
}

impl TargetAccess {
    /// Reads it on the target, with planrun's own search_path already pinned.
    pub(crate) fn read(client: &mut Client) -> Result<TargetAccess, RehearseError> {
        let failed = EngineError::database("cannot read the target's roles");
        let row = client
            .query_one(
                "SELECT current_user::text, r.rolsuper, pg_catalog.pg_get_userbyid(d.datdba)::text, \
                        d.datacl IS NULL, \
                        EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = $1) \
                 FROM pg_catalog.pg_database d, pg_catalog.pg_roles r \
                 WHERE d.datname = current_database() AND r.rolname = current_user",
                &[&COPY_SUPERUSER],
            )
            .map_err(failed)?;
        if row.get::<_, bool>(4) {
            return Err(RehearseError::Copy(format!(
                "the target has a role named {COPY_SUPERUSER}, which the copy's own superuser needs"
            )));
        }
        let default_privileges: bool = row.get(3);
        let grants = client
            .query(
                "SELECT a.privilege_type, \
                        CASE WHEN a.grantee = 0 THEN NULL \
                             ELSE pg_catalog.pg_get_userbyid(a.grantee)::text END, \
                        a.is_grantable \
                 FROM pg_catalog.pg_database d, pg_catalog.aclexplode(d.datacl) a \
                 WHERE d.datname = current_database()",
                &[],
            )
            .map_err(EngineError::database(
                "cannot read the target database's privileges",
            ))?;
        let settings = client
            .query(
                "SELECT r.rolname::text, s.setconfig FROM pg_catalog.pg_db_role_setting s \
                 LEFT JOIN pg_catalog.pg_roles r ON r.oid = s.setrole \
                 WHERE s.setdatabase = (SELECT oid FROM pg_catalog.pg_database \
                                        WHERE datname = current_database())",
                &[],
            )
            .map_err(EngineError::database(
                "cannot read the target database's settings",
            ))?;
        Ok(TargetAccess {
            database_settings: settings
                .iter()
                .map(|row| (row.get(0), row.get(1)))
                .collect(),
            applying_role: row.get(0),
            superuser: row.get(1),
            database_owner: row.get(2),
            database_grants: (!default_privileges).then(|| {
                grants
                    .iter()
                    .map(|grant| DatabaseGrant {
                        privilege: grant.get(0),
                        grantee: grant.get(1),
                        grantable: grant.get(2),
                    })
                    .collect()
            }),
        })
    }

    /// The role the plan runs as in the copy.
    pub(crate) fn applying_role(&self) -> &str {
        &self.applying_role
    }
}

/// Gives the copy's database the target's owner and privileges, then takes from the
/// copy what could reach this machine and the target did not give the applying role
/// (the module's point 4). `admin` is the copy's superuser in the copy's database.
pub(crate) fn confine(
    admin: &Target,
    database: &str,
    access: &TargetAccess,
    os_user: &str,
) -> Result<CopyRoles, RehearseError> {
    let mut client = admin.connect("planrun rehearse roles")?;
    crate::db::trusted_sql::pin_trusted_search_path(&mut client).map_err(EngineError::database(
        "cannot set planrun's own search_path",
    ))?;
    let mut statements = database_statements(database, access);
    let applying = &access.applying_role;
    let roles = client
        .query(
            "SELECT rolname::text, rolsuper, rolcanlogin FROM pg_catalog.pg_roles \
             WHERE rolname !~ '^pg_' AND rolname <> $1 ORDER BY 1",
            &[&COPY_SUPERUSER],
        )
        .map_err(EngineError::database("cannot list the copy's roles"))?;
    let mut demoted = Vec::new();
    for role in &roles {
        let (name, superuser, login): (String, bool, bool) =
            (role.get(0), role.get(1), role.get(2));
        if name == *applying {
            statements.push(format!("ALTER ROLE {} LOGIN", quote_identifier(&name)));
            continue;
        }
        if superuser {
            demoted.push(name.clone());
        }
        if superuser || login {
            statements.push(format!(
                "ALTER ROLE {} NOSUPERUSER NOLOGIN",
                quote_identifier(&name)
            ));
        }
    }
    let server_access = server_access(&mut client, applying, &mut statements)?;
    let mut tx = client.transaction().map_err(EngineError::database(
        "cannot begin confining the copy's roles",
    ))?;
    for statement in &statements {
        tx.batch_execute(statement)
            .map_err(EngineError::database(format!(
                "cannot run {statement} in the copy"
            )))?;
    }
    // Written as the catalog holds them: the target's server checked and flattened
    // them, which ALTER ... SET would need undoing (list settings, quoting) first.
    for (role, config) in &access.database_settings {
        tx.execute(
            "INSERT INTO pg_catalog.pg_db_role_setting (setdatabase, setrole, setconfig) \
             SELECT d.oid, coalesce(r.oid, 0), $2 FROM pg_catalog.pg_database d \
             LEFT JOIN pg_catalog.pg_roles r ON r.rolname = $1 \
             WHERE d.datname = current_database() AND ($1 IS NULL) = (r.oid IS NULL)",
            &[role, config],
        )
        .map_err(EngineError::database(
            "cannot give the copy the target database's settings",
        ))?;
    }
    tx.commit()
        .map_err(EngineError::database("cannot confine the copy's roles"))?;
    Ok(CopyRoles {
        applying_role: applying.clone(),
        superuser: access.superuser,
        server_access,
        os_user: os_user.to_owned(),
        copied: roles.len(),
        demoted,
    })
}

/// The target's database owner and, unless default, its ACL, for the copy's
/// `database`.
fn database_statements(database: &str, access: &TargetAccess) -> Vec<String> {
    let (database, owner) = (
        quote_identifier(database),
        quote_identifier(&access.database_owner),
    );
    let mut statements = vec![format!("ALTER DATABASE {database} OWNER TO {owner}")];
    let Some(grants) = &access.database_grants else {
        return statements;
    };
    statements.push(format!(
        "REVOKE ALL ON DATABASE {database} FROM PUBLIC, {owner}"
    ));
    // aclexplode names only these; anything else is skipped rather than spliced in.
    let known = ["CREATE", "CONNECT", "TEMPORARY"];
    for grant in grants
        .iter()
        .filter(|g| known.contains(&g.privilege.as_str()))
    {
        let grantee = grant
            .grantee
            .as_deref()
            .map_or_else(|| "PUBLIC".to_owned(), quote_identifier);
        statements.push(format!(
            "GRANT {} ON DATABASE {database} TO {grantee}{}",
            grant.privilege,
            if grant.grantable {
                " WITH GRANT OPTION"
            } else {
                ""
            }
        ));
    }
    statements
}

/// Which server-access roles `applying` is a member of, and the statements that
/// leave it the only member of those, and no one a member of the others.
fn server_access(
    client: &mut Client,
    applying: &str,
    statements: &mut Vec<String>,
) -> Result<Vec<String>, RehearseError> {
    let roles: Vec<&str> = SERVER_ACCESS_ROLES.to_vec();
    let held = client
        .query(
            "SELECT r::text FROM pg_catalog.unnest($1::text[]) r \
             WHERE pg_catalog.pg_has_role($2, r, 'MEMBER') ORDER BY 1",
            &[&roles, &applying],
        )
        .map_err(EngineError::database(
            "cannot read the applying role's memberships",
        ))?
        .iter()
        .map(|row| row.get(0))
        .collect::<Vec<String>>();
    let grants = client
        .query(
            "SELECT g.rolname::text, m.rolname::text, pg_catalog.pg_get_userbyid(a.grantor)::text \
             FROM pg_catalog.pg_auth_members a \
             JOIN pg_catalog.pg_roles g ON g.oid = a.roleid \
             JOIN pg_catalog.pg_roles m ON m.oid = a.member \
             WHERE g.rolname = ANY($1)",
            &[&roles],
        )
        .map_err(EngineError::database("cannot list the copy's memberships"))?;
    for grant in &grants {
        let (role, member, grantor): (String, String, String) =
            (grant.get(0), grant.get(1), grant.get(2));
        statements.push(format!(
            "REVOKE {} FROM {} GRANTED BY {}",
            quote_identifier(&role),
            quote_identifier(&member),
            quote_identifier(&grantor)
        ));
    }
    for role in &held {
        statements.push(format!(
            "GRANT {} TO {}",
            quote_identifier(role),
            quote_identifier(applying)
        ));
    }
    Ok(held)
}
