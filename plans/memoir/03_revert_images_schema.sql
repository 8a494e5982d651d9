-- The way back of stage 3, after 04_revert_carry_images_back.sql has carried any row
-- the application added since back into the sections' and covers' JSON.
DROP TABLE memoir_images;
