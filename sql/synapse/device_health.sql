-- coldpath `device_health` (gold) for Synapse serverless SQL: one row per device known on a
-- date (in its silver, the 7 dates before, or the maintenance log), with its status.
-- Point BULK at the table's root (partitions, health_date=…, are found by Synapse);
-- replace the account and path with your lake's (jobs/nightly.toml: lake).
CREATE VIEW dbo.device_health AS
SELECT *
FROM OPENROWSET(
    BULK 'https://contosoiotlake.dfs.core.windows.net/lake/iot/device_health/',
    FORMAT = 'DELTA'
) WITH (
    device_id               varchar(1024) COLLATE Latin1_General_100_BIN2_UTF8,
    device_type             varchar(256) COLLATE Latin1_General_100_BIN2_UTF8,
    readings                bigint,
    expected_readings       bigint,
    coverage                float,
    max_gap_s               float,
    gaps_over_5m            bigint,
    first_seen              datetime2(6),
    last_seen               datetime2(6),
    duplicates              bigint,
    rejected                bigint,
    late_readings           bigint,
    transit_p50_s           float,
    transit_p95_s           float,
    stuck_temperature_hours int,
    status                  varchar(16)  COLLATE Latin1_General_100_BIN2_UTF8,
    health_date             date
) AS rows;
