CREATE INDEX builds_build_status_idx ON builds USING btree (build_status ASC);
