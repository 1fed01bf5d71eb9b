//! `--dev`: secrets generated once and kept in the data directory, a demo
//! tenant seeded on first start, and everything needed to try the hub.

use std::path::Path;

use presence_protocol::admin::{TeamPut, UserPut};
use presence_protocol::{MembershipRole, Profile};
use rand::distr::{Alphanumeric, SampleString};
use serde::{Deserialize, Serialize};

use crate::directory::ops;
use crate::hub::{Hub, WriteError};

pub const DEMO_TENANT: &str = "demo";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DevSecrets {
    pub jwt_secret: String,
    pub admin_key: String,
}

/// Reads `dev-secrets.json` from the data directory, or creates it, so that
/// tokens printed by one `--dev` run stay valid after a restart.
pub fn secrets(data_dir: &Path) -> std::io::Result<DevSecrets> {
    let path = data_dir.join("dev-secrets.json");
    if let Ok(bytes) = std::fs::read(&path) {
        if let Ok(s) = serde_json::from_slice(&bytes) {
            return Ok(s);
        }
    }
    let mut rng = rand::rng();
    let s = DevSecrets {
        jwt_secret: Alphanumeric.sample_string(&mut rng, 32),
        admin_key: Alphanumeric.sample_string(&mut rng, 32),
    };
    std::fs::create_dir_all(data_dir)?;
    std::fs::write(&path, serde_json::to_vec_pretty(&s)?)?;
    Ok(s)
}

const PEOPLE: [(&str, &str, &str, Profile); 20] = [
    ("ana", "Ana Souza", "Ana", Profile::Admin),
    ("bruno", "Bruno Lima", "Bruno", Profile::Standard),
    ("carla", "Carla Dias", "Carla", Profile::Standard),
    ("diego", "Diego Alves", "Diego", Profile::Standard),
    ("elisa", "Elisa Rocha", "Elisa", Profile::Standard),
    ("fabio", "Fábio Nunes", "Fábio", Profile::Standard),
    ("gabi", "Gabriela Reis", "Gabi", Profile::Standard),
    ("hugo", "Hugo Melo", "Hugo", Profile::Standard),
    ("iris", "Íris Prado", "Íris", Profile::Standard),
    ("joao", "João Pires", "João", Profile::Standard),
    ("karen", "Karen Luz", "Karen", Profile::Restricted),
    ("leo", "Leonardo Cruz", "Leo", Profile::Standard),
    ("marta", "Marta Gomes", "Marta", Profile::Admin),
    ("nina", "Nina Costa", "Nina", Profile::Standard),
    ("otavio", "Otávio Sá", "Otávio", Profile::Standard),
    ("paula", "Paula Vaz", "Paula", Profile::Restricted),
    ("rafa", "Rafael Teles", "Rafa", Profile::Standard),
    ("sofia", "Sofia Brito", "Sofia", Profile::Standard),
    ("tiago", "Tiago Ramos", "Tiago", Profile::Standard),
    ("vera", "Vera Campos", "Vera", Profile::Standard),
];

/// Seeds the demo tenant unless it exists. Returns whether it seeded.
pub async fn seed(hub: &Hub) -> Result<bool, WriteError> {
    if hub.tenant(DEMO_TENANT).is_some() {
        return Ok(false);
    }
    hub.put_tenant(
        DEMO_TENANT,
        &presence_protocol::admin::TenantPut {
            user_limit: 50,
            event_retention_s: None,
            time_zone: None,
            history_retention_days: None,
        },
    )
    .await?;
    let teams = [
        ("support", "Support", true),
        ("sales", "Sales", true),
        ("finance", "Finance", false),
    ];
    for (id, name, crm) in teams {
        let body = TeamPut {
            name: name.into(),
            crm,
            active: true,
        };
        hub.write(DEMO_TENANT, |d| Ok((ops::put_team(d, id, &body)?, ())))
            .await?;
    }
    for (i, (id, name, nick, profile)) in PEOPLE.iter().enumerate() {
        let body = UserPut {
            name: Some((*name).into()),
            nickname: Some((*nick).into()),
            email: Some(format!("{id}@demo.example")),
            profile: Some(*profile),
            ..Default::default()
        };
        hub.write(DEMO_TENANT, |d| Ok((ops::put_user(d, id, &body)?, ())))
            .await?;
        let team = ["support", "sales", "finance"][i % 3];
        let role = if i < 3 {
            MembershipRole::Supervisor
        } else {
            MembershipRole::Member
        };
        if *profile != Profile::Admin {
            hub.write(DEMO_TENANT, |d| {
                Ok((ops::put_member(d, team, id, role)?, ()))
            })
            .await?;
        }
    }
    Ok(true)
}
