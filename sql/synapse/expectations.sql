-- coldpath `expectations` for Synapse serverless SQL: per run date and declared expectation,
-- the rows checked and failed (passed = checked - failed): a team's rules over time.
-- Point BULK at the table's root (partitions, run_date=…, are found by Synapse);
-- replace the account and path with your lake's (jobs/nightly.toml: lake).
-- The table exists once a job that declares `[[expectations]]` has run.
CREATE VIEW dbo.expectations AS
SELECT *
FROM OPENROWSET(
    BULK 'https://contosoiotlake.dfs.core.windows.net/lake/iot/expectations/',
    FORMAT = 'DELTA'
) WITH (
    run_date date,
    name     varchar(128) COLLATE Latin1_General_100_BIN2_UTF8,
    action   varchar(8)   COLLATE Latin1_General_100_BIN2_UTF8,
    checked  bigint,
    failed   bigint,
    run_id   varchar(36)  COLLATE Latin1_General_100_BIN2_UTF8
) AS rows;
