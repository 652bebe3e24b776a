COPY (
  SELECT id, org_id, to_char(occurred_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS occurred_at,
         action, target_type, pg_temp.csv_cell(target_id) AS target_id, actor_type, actor_id,
         pg_temp.csv_cell(actor_email) AS actor_email, host(ip) AS ip,
         pg_temp.csv_cell(user_agent) AS user_agent, pg_temp.csv_cell(request_id) AS request_id, metadata
  FROM audit.events
  WHERE org_id = current_setting('test.org_id')::uuid
  ORDER BY occurred_at DESC, id DESC
) TO STDOUT WITH (FORMAT csv, HEADER)
